"""Classical (optimisation-based) registration methods and the identity baseline."""

from warpbench.hookspecs import hookimpl
from warpbench_classical.affine import AffineMethod
from warpbench_classical.demons import DemonsMethod
from warpbench_classical.greedy import GreedyMethod
from warpbench_classical.identity import IdentityMethod
from warpbench_classical.syn import SynMethod


@hookimpl
def register_methods(register):
    register(IdentityMethod())
    register(AffineMethod())
    register(GreedyMethod())
    register(SynMethod())
    register(DemonsMethod())
