"""Learning registration methods: VoxelMorph and LKU-Net, trained by the platform, in plain torch."""

from warpbench.hookspecs import hookimpl
from warpbench_learning.methods import LKUNet, VoxelMorph


@hookimpl
def register_methods(register):
    register(VoxelMorph())
    register(LKUNet())
