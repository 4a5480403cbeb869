// batchnorm: placeholder
