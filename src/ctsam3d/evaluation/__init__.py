"""ctsam3d.evaluation"""
