"""Executors: how a plan's pairs and trainings are computed; the scheduler writes the results.

Built in (:func:`register_executors`): ``pool``, the default (worker processes, one per GPU or N
on the CPU, killed and replaced when a method hangs or crashes: :mod:`~.pool`); ``inprocess``
(this process, one pair after another, for debugging: :mod:`~.inprocess`); ``ray`` (tasks on a
Ray cluster: :mod:`~.ray`, which imports ray only when used). An executor plugin subclasses
:class:`Executor` (:mod:`~.base`); what it is handed and hands back is in :mod:`~.work`, and what
a worker process does with it in :mod:`~.worker`.
"""

from warpbench.executors.base import Executor, ExecutorError, default_device
from warpbench.executors.inprocess import InProcessExecutor
from warpbench.executors.pool import PoolExecutor
from warpbench.executors.ray import RayExecutor
from warpbench.executors.work import (PairDone, RunWork, TaskFeed, TrainingDone, TrainingWork,
                                      loading_failed)
from warpbench.hookspecs import hookimpl


@hookimpl
def register_executors(register):
    register("pool", PoolExecutor)
    register("inprocess", InProcessExecutor)
    register("ray", RayExecutor)


__all__ = ["Executor", "ExecutorError", "InProcessExecutor", "PairDone", "PoolExecutor",
           "RayExecutor", "RunWork", "TaskFeed", "TrainingDone", "TrainingWork", "default_device",
           "loading_failed"]
