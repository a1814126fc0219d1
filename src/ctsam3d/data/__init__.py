"""ctsam3d.data"""
