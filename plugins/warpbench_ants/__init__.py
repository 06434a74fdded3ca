"""ANTs SyN (antspyx) as a warpbench method: the classical reference of the study, run by the
platform on the same pairs and scored the same way as every other method.

antspyx is optional (``pip install 'warpbench[ants]'``, or ``make peers`` for a separate venv,
since its pins conflict with the core's). The method registers either way, so that it is listed;
without the package its ``availability()`` says so and each pair fails with the install command.
"""

from warpbench.hookspecs import hookimpl
from warpbench_ants.method import AntsSynMethod


@hookimpl
def register_methods(register):
    register(AntsSynMethod())
