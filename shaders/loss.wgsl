// loss: placeholder
