"""ctsam3d.geometry"""
