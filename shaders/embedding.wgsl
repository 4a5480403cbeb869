// embedding: placeholder
