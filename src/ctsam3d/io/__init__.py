"""ctsam3d.io"""
