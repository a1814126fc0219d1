"""ctsam3d.server"""
