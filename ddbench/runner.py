"""``ddbench run``: the names of :mod:`ddbench.pipeline` (config -> preflight -> observer ->
distil -> evaluate -> results), re-exported here for code written against this module."""

from ddbench.pipeline.config import (DIST_EVAL_MODES, RESULTS_SCHEMA, Plan, RunConfig, RunError, call_method_check,
                                     check_devices, check_method_observer, check_setup_all, data_options, plan_run)
from ddbench.pipeline.context import RunContext, observer_identity, summarize, training_identity, versions
from ddbench.pipeline.distil import (add_ddranking_metrics, combine_distillations, distill_and_evaluate, distill_one,
                                     full_data_accuracy)
from ddbench.pipeline.driver import run
from ddbench.pipeline.evaluate import evaluate_one, evaluate_saved, saved_set_name
from ddbench.pipeline.preflight import (SAVED_SET_FIX, check_architecture_fits, check_distilled, check_saved_contents,
                                        check_saved_fits, check_saved_sets_fit, check_saved_sets_unseen, check_writable,
                                        decode_ahead, is_ddbench_set, load_dataset, path_digest)

__all__ = [
    "DIST_EVAL_MODES", "RESULTS_SCHEMA", "Plan", "RunConfig", "RunError", "call_method_check", "check_devices",
    "check_method_observer", "check_setup_all", "data_options", "plan_run", "RunContext", "observer_identity",
    "summarize", "training_identity", "versions", "add_ddranking_metrics", "combine_distillations",
    "distill_and_evaluate", "distill_one", "full_data_accuracy", "run", "evaluate_one", "evaluate_saved",
    "saved_set_name", "SAVED_SET_FIX", "check_architecture_fits", "check_distilled", "check_saved_contents",
    "check_saved_fits", "check_saved_sets_fit", "check_saved_sets_unseen", "check_writable", "decode_ahead",
    "is_ddbench_set", "load_dataset", "path_digest",
]
