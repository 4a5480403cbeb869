// conv: placeholder
