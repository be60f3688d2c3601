"""sd_notify-style status files and the readiness probe that reads them."""
