"""ctsam3d.modeling"""
