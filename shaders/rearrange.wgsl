// rearrange: placeholder
