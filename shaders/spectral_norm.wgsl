// spectral_norm: placeholder
