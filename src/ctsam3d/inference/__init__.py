"""ctsam3d.inference"""
