"""Image files in and out: one decoder for every image (PIL, rasterio for TIFF/GeoTIFF), the pixel and
time budgets for work per image.
"""
