"""Learning registration methods: VoxelMorph, LKU-Net and TransMorph, trained by the platform, in
plain torch."""

from warpbench.hookspecs import hookimpl
from warpbench_learning.methods import LKUNet, TransMorph, VoxelMorph


@hookimpl
def register_methods(register):
    register(VoxelMorph())
    register(LKUNet())
    register(TransMorph())
