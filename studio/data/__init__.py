"""Data stage: read files and Hub ids, detect the layout, normalize, check, fix, export; the R1 training text."""
