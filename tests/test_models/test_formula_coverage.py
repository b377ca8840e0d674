"""Every registered PEFT method has a test against a hand-written reference of its published
formula (plain torch on the block's tensors, non-trivial parameters), listed here.

``tools/misc/mutation_check.py`` runs these tests against mutants of a method's file.
"""
import ast
import os.path as osp

import pytest

pytest.importorskip('mmpretrain')
from vpetl_mm.registry import PEFT_METHODS  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
REPARAM = 'tests/test_models/test_formulas_reparam.py'
ADAPTERS = 'tests/test_models/test_formulas_adapters.py'
SELECTION = f'{REPARAM}::test_selection_trainable_and_plain_forward'
SELECTING = 'tests/test_models/test_selection_methods.py'  # methods that select from the data
MONA = 'tests/test_models/test_mona_lorand.py'
DTL_TESTS = 'tests/test_models/test_dtl.py'
PREFIX = 'tests/test_models/test_prefix.py'

#: method type -> its formula (and init) tests, as pytest node ids
FORMULA_TESTS = {
    'LinearProbe': [SELECTION],
    'FullFineTune': [SELECTION],
    'BitFit': [SELECTION],
    'LNTune': [SELECTION],
    'PartialK': [SELECTION],
    'IA3': ['tests/test_models/test_ia3.py::test_formula_and_merge',
            'tests/test_models/test_ia3.py::test_parameters_and_vit_b_count',
            'tests/test_models/test_ia3.py::test_bad_targets'],
    'LoRA': [f'{REPARAM}::test_lora_init_and_trainable', f'{REPARAM}::test_lora_formula',
             f'{REPARAM}::test_lora_defaults_blocks_and_dropout', f'{REPARAM}::test_lora_errors'],
    'Hydra': [f'{REPARAM}::test_hydra_init_and_trainable', f'{REPARAM}::test_hydra_formula',
              f'{REPARAM}::test_hydra_defaults_targets_blocks_errors_and_merge'],
    'FacT-TT': [f'{REPARAM}::test_fact_tt_init_and_trainable',
                f'{REPARAM}::test_fact_tt_formula',
                f'{REPARAM}::test_fact_defaults_errors_dropout_and_merge'],
    'FacT-TK': [f'{REPARAM}::test_fact_tk_init_and_trainable',
                f'{REPARAM}::test_fact_tk_formula',
                f'{REPARAM}::test_fact_defaults_errors_dropout_and_merge'],
    'SSF': [f'{REPARAM}::test_ssf_init_and_trainable', f'{REPARAM}::test_ssf_formula',
            f'{REPARAM}::test_ssf_init_std_merge_and_one_wrap_per_module'],
    'RepAdapter': [f'{REPARAM}::test_repadapter_init_and_trainable',
                   f'{REPARAM}::test_repadapter_formula',
                   f'{REPARAM}::test_repadapter_defaults_blocks_errors_and_merge'],
    'ARC': [f'{REPARAM}::test_arc_init_and_trainable', f'{REPARAM}::test_arc_formula',
            f'{REPARAM}::test_arc_defaults_positions_errors_and_merge'],
    'ARC_att': [f'{REPARAM}::test_arc_att_formula_init_and_trainable',
                f'{REPARAM}::test_arc_defaults_positions_errors_and_merge'],
    'Adapter': [f'{ADAPTERS}::test_adapter_init', f'{ADAPTERS}::test_adapter_formula',
                f'{ADAPTERS}::test_adapter_defaults_blocks_and_errors',
                'tests/test_models/test_adapter_attn_residual.py'
                '::test_adapter_attn_residual_formula'],
    'AdaptFormer': [f'{ADAPTERS}::test_adaptformer_init',
                    f'{ADAPTERS}::test_adaptformer_formula',
                    f'{ADAPTERS}::test_adaptformer_blocks_and_errors'],
    'Adapter+': [f'{ADAPTERS}::test_adapter_plus_init', f'{ADAPTERS}::test_adapter_plus_formula',
                 f'{ADAPTERS}::test_adapter_plus_defaults_blocks_and_drop_path'],
    'Houlsby': [f'{ADAPTERS}::test_houlsby_init', f'{ADAPTERS}::test_houlsby_formula',
                f'{ADAPTERS}::test_houlsby_defaults_blocks_and_errors'],
    'Compacter': [f'{ADAPTERS}::test_compacter_init', f'{ADAPTERS}::test_compacter_formula',
                  f'{ADAPTERS}::test_compacter_defaults_shapes_blocks_and_errors'],
    'DTL': [f'{ADAPTERS}::test_dtl_init', f'{ADAPTERS}::test_dtl_formula'],
    'DTL+': [f'{ADAPTERS}::test_dtl_init', f'{ADAPTERS}::test_dtl_formula',
             f'{DTL_TESTS}::test_dtl_plus_video_formula',
             f'{DTL_TESTS}::test_dtl_plus_frames_stay_independent',
             f'{DTL_TESTS}::test_dtl_plus_video_identity_at_init'],
    'PATT': [f'{ADAPTERS}::test_patt_init', f'{ADAPTERS}::test_patt_formula'],
    'KAdaptation': ['tests/test_models/test_kadaptation.py::test_formula_q_and_v_only',
                    'tests/test_models/test_kadaptation.py::test_init_is_identity_and_learns'],
    'VPT-shallow': ['tests/test_models/test_vpt.py::test_official_formula',
                    'tests/test_models/test_vpt.py::test_swin_shallow_block_equals_vpt_swin_block'],
    'VPT-deep': ['tests/test_models/test_vpt.py::test_official_formula'],
    'PrefixTuning': [f'{PREFIX}::test_attention_with_prefixes',
                     f'{PREFIX}::test_window_attention_with_prefixes',
                     f'{PREFIX}::test_video_swin_window_attention_with_prefixes'],
    'Mona': [f'{MONA}::test_mona_formula', f'{MONA}::test_mona_video_formula',
             f'{MONA}::test_mona_frames_stay_independent'],
    'LoRand': ['tests/test_models/test_mona_lorand.py::test_lorand_formula'],
    'SNF': ['tests/test_models/test_mona_lorand.py::test_snf_formula'],
    'DyT': ['tests/test_models/test_dyt.py::test_inference_formula_and_real_skipping',
            'tests/test_models/test_dyt.py::test_moe_adapter_counts_and_formula'],
    'LST': ['tests/test_models/test_lst.py::test_formula'],
    'LAST': ['tests/test_models/test_last.py::test_identity_then_formula'],
    'HST': ['tests/test_models/test_hst.py::test_formula',
            'tests/test_models/test_hst.py::test_init',
            'tests/test_models/test_hst.py::test_side_network_reads_the_meta_tokens'],
    'Res-Tuning': ['tests/test_models/test_restuning.py::test_res_tuning_identity_then_formula'],
    'Res-Tuning-Bypass': ['tests/test_models/test_restuning.py::test_formula'],
    'E3VA': ['tests/test_models/test_e3va.py::test_highway_formula_and_training'],
    'SCT': [f'{SELECTING}::test_sct_picks_largest_class_aware_scores',
            f'{SELECTING}::test_sct_selection_formula_and_training'],
    'GPS': [f'{SELECTING}::test_gps_picks_largest_gradient_magnitudes',
            f'{SELECTING}::test_gps_selects_and_trains_only_selected_entries',
            f'{SELECTING}::test_gps_arguments_blocks_and_errors',
            f'{SELECTING}::test_gps_counts_with_two_connections',
            f'{SELECTING}::test_gps_masked_gradient_is_the_gradient_on_selected_entries',
            f'{SELECTING}::test_gps_pooled_features_of_each_toolbox'],
}
# the arguments (defaults, blocks, errors) and the existing tests of each method's other
# behaviour (merge, dropout, bad settings), run by the mutation check with its formula tests
ARGUMENTS = 'tests/test_models/test_method_arguments.py'
DEFAULTS, ERRORS = f'{ARGUMENTS}::test_defaults', f'{ARGUMENTS}::test_errors_name_the_value'
BLOCKS = f'{ARGUMENTS}::test_blocks_selects_the_blocks'
KADAPTATION = 'tests/test_models/test_kadaptation.py'
OTHER_TESTS = {
    'KAdaptation': [DEFAULTS, ERRORS, BLOCKS,
                    f'{KADAPTATION}::test_dropout_acts_on_the_matrix_in_training_only',
                    f'{KADAPTATION}::test_merge_is_exact_and_plain',
                    f'{KADAPTATION}::test_bad_settings',
                    f'{KADAPTATION}::test_rule_shapes_init_and_accepted_settings'],
    'PATT': [DEFAULTS, ERRORS, BLOCKS, 'tests/test_models/test_patt.py::test_patt_rows',
             'tests/test_models/test_patt.py::test_patt_bad_targets'],
    'LoRand': [DEFAULTS, ERRORS, BLOCKS, f'{MONA}::test_lorand_init_bounds_and_settings'],
    'Mona': [DEFAULTS, BLOCKS, f'{MONA}::test_mona_init',
             f'{MONA}::test_mona_refuses_other_grid_ranks'],
    'SNF': [DEFAULTS, ERRORS, BLOCKS, f'{MONA}::test_snf_init'],
    'PrefixTuning': [DEFAULTS, ERRORS, BLOCKS],
    'LoRA': [BLOCKS], 'Adapter': [BLOCKS], 'AdaptFormer': [BLOCKS], 'DyT': [BLOCKS],
}
FORMULA_TESTS = {name: tests + OTHER_TESTS.get(name, []) for name, tests in FORMULA_TESTS.items()}


def test_every_registered_method_has_formula_tests():
    registered = set(PEFT_METHODS.module_dict.values())  # aliases name the same class
    listed = {PEFT_METHODS.get(name) for name in FORMULA_TESTS}
    assert None not in listed, [n for n in FORMULA_TESTS if PEFT_METHODS.get(n) is None]
    missing = sorted(cls.__name__ for cls in registered - listed)
    assert not missing, f'methods without a formula test: {missing}'


@pytest.mark.parametrize('method', sorted(FORMULA_TESTS))
def test_listed_tests_exist(method):
    for node in FORMULA_TESTS[method]:
        path, name = node.split('::')
        tree = ast.parse(open(osp.join(ROOT, path)).read())
        names = {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
        assert name in names, f'{method}: {node} does not exist'
