// softmax: placeholder
