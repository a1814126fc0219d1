"""ctsam3d.training"""
