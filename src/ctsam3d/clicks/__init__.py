"""ctsam3d.clicks"""
