// optim: placeholder
