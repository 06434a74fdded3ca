"""FireANTs (Jena et al.) greedy and SyN registration as warpbench methods: the GPU-first
classical peers of the study, run by the platform on the same pairs and scored the same way.

fireants is optional (``pip install 'warpbench[fireants]'``, or ``make peers`` for a separate venv,
since it pins SimpleITK 2.2.1). The methods register either way, so that they are listed; without
the package their ``availability()`` says so and each pair fails with the install command.
"""

from warpbench.hookspecs import hookimpl
from warpbench_fireants.method import FireantsGreedyMethod, FireantsSynMethod


@hookimpl
def register_methods(register):
    register(FireantsGreedyMethod())
    register(FireantsSynMethod())
