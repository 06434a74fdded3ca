"""Published registration results, each with its source, for the instrumentation-bias page.

Only numbers we are sure the paper prints are entered here; a value we could not check against
the paper is left out rather than guessed. Each record says where it is printed and how the
method was set up there, because the study's point is that reported numbers carry the choices of
whoever ran the baselines.

Adding a paper is adding records to ``RESULTS`` (or, for another package, implementing
``register_reported_results`` the same way).
"""

from warpbench.hookspecs import hookimpl
from warpbench.literature import ReportedResult

TRANSMORPH = dict(
    source="Chen et al., MedIA 2022 (TransMorph)",
    paper=(
        "J. Chen, E. C. Frey, Y. He, W. P. Segars, Y. Li, Y. Du. TransMorph: Transformer for "
        "unsupervised medical image registration. Medical Image Analysis 82, 102615 (2022)"
    ),
    url="https://doi.org/10.1016/j.media.2022.102615",
    table="IXI results table",
    dataset="IXI",
    metric="dice",
    notes=(
        "Atlas-to-patient registration of T1 brain MRI from IXI, as preprocessed by the TransMorph "
        "authors; mean Dice over the paper's evaluated brain structures and test volumes. "
        "warpbench has no IXI dataset block yet, so there is nothing to re-measure it against."
    ),
)

RESULTS = (
    ReportedResult(
        method="SyN", value=0.645, family="classical", **TRANSMORPH,
        configuration=(
            "ANTs SyN run by the TransMorph authors through ANTsPy with a mean-squares (MSQ) "
            "similarity metric and their chosen iteration schedule, not tuned per dataset; the "
            "'Magic or Mirage?' study (Jena et al., NeurIPS 2024) singles out this set-up as an "
            "example of under-configured classical baselines"
        ),
    ),
    ReportedResult(
        method="NiftyReg", value=0.645, family="classical", **TRANSMORPH,
        configuration=(
            "NiftyReg free-form (B-spline) registration run by the TransMorph authors with the "
            "settings their baseline section lists, not tuned per dataset"
        ),
    ),
    ReportedResult(
        method="VoxelMorph-2", value=0.732, family="learning", supervision="none", **TRANSMORPH,
        configuration=(
            "VoxelMorph (Balakrishnan et al. 2019), the larger 'VoxelMorph-2' network, retrained "
            "by the TransMorph authors on the IXI training volumes without label maps (image "
            "similarity and smoothness only)"
        ),
    ),
    ReportedResult(
        method="TransMorph", value=0.753, family="learning", supervision="none", **TRANSMORPH,
        configuration=(
            "the paper's own method, trained on the IXI training volumes without label maps "
            "(image similarity and smoothness only)"
        ),
    ),
)


@hookimpl
def register_reported_results(register):
    for result in RESULTS:
        register(result)
