"""ctsam3d.anatomy"""
