// resample: placeholder
