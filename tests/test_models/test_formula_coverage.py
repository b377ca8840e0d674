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
PEFT = 'tests/test_peft'  # one test module per method file of vpetl_mm/peft (a few share one)

#: method type -> its formula (and init) tests, as pytest node ids
FORMULA_TESTS = {
    'LinearProbe': [
        f'{PEFT}/test_baselines.py::test_selection_trainable_and_plain_forward',
    ],
    'FullFineTune': [
        f'{PEFT}/test_baselines.py::test_selection_trainable_and_plain_forward',
    ],
    'BitFit': [
        f'{PEFT}/test_baselines.py::test_selection_trainable_and_plain_forward',
    ],
    'LNTune': [
        f'{PEFT}/test_baselines.py::test_selection_trainable_and_plain_forward',
    ],
    'PartialK': [
        f'{PEFT}/test_baselines.py::test_selection_trainable_and_plain_forward',
    ],
    'IA3': [
        f'{PEFT}/test_ia3.py::test_formula_and_merge',
        f'{PEFT}/test_ia3.py::test_parameters_and_vit_b_count',
        f'{PEFT}/test_ia3.py::test_bad_targets',
        f'{PEFT}/test_ia3.py::test_blocks_out_of_range_names_the_key',
        f'{PEFT}/test_ia3.py::test_merge_without_a_qkv_bias',
        f'{PEFT}/test_ia3.py::test_qkv_keeps_its_dtype_under_autocast',
        f'{PEFT}/test_ia3.py::test_fold_refused_where_the_qkv_bias_is_assembled_outside',
    ],
    'LoRA': [
        f'{PEFT}/test_lora.py::test_lora_init_and_trainable',
        f'{PEFT}/test_lora.py::test_lora_formula',
        f'{PEFT}/test_lora.py::test_lora_defaults_blocks_and_dropout',
        f'{PEFT}/test_lora.py::test_lora_errors',
    ],
    'Hydra': [
        f'{PEFT}/test_hydra.py::test_hydra_init_and_trainable',
        f'{PEFT}/test_hydra.py::test_hydra_formula',
        f'{PEFT}/test_hydra.py::test_hydra_defaults_targets_blocks_errors_and_merge',
    ],
    'FacT-TT': [
        f'{PEFT}/test_fact.py::test_fact_tt_init_and_trainable',
        f'{PEFT}/test_fact.py::test_fact_tt_formula',
        f'{PEFT}/test_fact.py::test_fact_defaults_errors_dropout_and_merge',
    ],
    'FacT-TK': [
        f'{PEFT}/test_fact.py::test_fact_tk_init_and_trainable',
        f'{PEFT}/test_fact.py::test_fact_tk_formula',
        f'{PEFT}/test_fact.py::test_fact_defaults_errors_dropout_and_merge',
    ],
    'SSF': [
        f'{PEFT}/test_ssf.py::test_ssf_init_and_trainable',
        f'{PEFT}/test_ssf.py::test_ssf_formula',
        f'{PEFT}/test_ssf.py::test_ssf_init_std_merge_and_one_wrap_per_module',
    ],
    'RepAdapter': [
        f'{PEFT}/test_repadapter.py::test_repadapter_init_and_trainable',
        f'{PEFT}/test_repadapter.py::test_repadapter_formula',
        f'{PEFT}/test_repadapter.py::test_repadapter_defaults_blocks_errors_and_merge',
    ],
    'ARC': [
        f'{PEFT}/test_arc.py::test_arc_init_and_trainable',
        f'{PEFT}/test_arc.py::test_arc_formula',
        f'{PEFT}/test_arc.py::test_arc_defaults_positions_errors_and_merge',
    ],
    'ARC_att': [
        f'{PEFT}/test_arc.py::test_arc_att_formula_init_and_trainable',
        f'{PEFT}/test_arc.py::test_arc_defaults_positions_errors_and_merge',
    ],
    'Adapter': [
        f'{PEFT}/test_adapter.py::test_adapter_init',
        f'{PEFT}/test_adapter.py::test_adapter_formula',
        f'{PEFT}/test_adapter.py::test_adapter_defaults_blocks_and_errors',
        f'{PEFT}/test_adapter_attn_residual.py::test_adapter_attn_residual_formula',
    ],
    'AdaptFormer': [
        f'{PEFT}/test_adaptformer.py::test_adaptformer_init',
        f'{PEFT}/test_adaptformer.py::test_adaptformer_formula',
        f'{PEFT}/test_adaptformer.py::test_adaptformer_blocks_and_errors',
    ],
    'Adapter+': [
        f'{PEFT}/test_adapter_plus.py::test_adapter_plus_init',
        f'{PEFT}/test_adapter_plus.py::test_adapter_plus_formula',
        f'{PEFT}/test_adapter_plus.py::test_adapter_plus_defaults_blocks_and_drop_path',
    ],
    'Houlsby': [
        f'{PEFT}/test_houlsby.py::test_houlsby_init',
        f'{PEFT}/test_houlsby_compacter.py::test_houlsby_formula',
        f'{PEFT}/test_houlsby.py::test_houlsby_defaults_blocks_and_errors',
    ],
    'Compacter': [
        f'{PEFT}/test_compacter.py::test_compacter_init',
        f'{PEFT}/test_compacter.py::test_compacter_formula',
        f'{PEFT}/test_compacter.py::test_compacter_defaults_shapes_blocks_and_errors',
    ],
    'DTL': [
        f'{PEFT}/test_dtl_formula.py::test_dtl_init',
        f'{PEFT}/test_dtl_formula.py::test_dtl_formula',
    ],
    'DTL+': [
        f'{PEFT}/test_dtl_formula.py::test_dtl_init',
        f'{PEFT}/test_dtl_formula.py::test_dtl_formula',
        f'{PEFT}/test_dtl.py::test_dtl_plus_video_formula',
        f'{PEFT}/test_dtl.py::test_dtl_plus_frames_stay_independent',
        f'{PEFT}/test_dtl.py::test_dtl_plus_video_identity_at_init',
    ],
    'PATT': [
        f'{PEFT}/test_patt_formula.py::test_patt_init',
        f'{PEFT}/test_patt_formula.py::test_patt_formula',
    ],
    'KAdaptation': [
        f'{PEFT}/test_kadaptation.py::test_formula_q_and_v_only',
        f'{PEFT}/test_kadaptation.py::test_init_is_identity_and_learns',
    ],
    'VPT-shallow': [
        f'{PEFT}/test_vpt.py::test_official_formula',
        f'{PEFT}/test_vpt.py::test_swin_shallow_block_equals_vpt_swin_block',
    ],
    'VPT-deep': [
        f'{PEFT}/test_vpt.py::test_official_formula',
    ],
    'PrefixTuning': [
        f'{PEFT}/test_prefix.py::test_attention_with_prefixes',
        f'{PEFT}/test_prefix.py::test_window_attention_with_prefixes',
        f'{PEFT}/test_prefix.py::test_video_swin_window_attention_with_prefixes',
    ],
    'Mona': [
        f'{PEFT}/test_mona_lorand.py::test_mona_formula',
        f'{PEFT}/test_mona_lorand.py::test_mona_video_formula',
        f'{PEFT}/test_mona_lorand.py::test_mona_frames_stay_independent',
    ],
    'LoRand': [
        f'{PEFT}/test_mona_lorand.py::test_lorand_formula',
    ],
    'SNF': [
        f'{PEFT}/test_mona_lorand.py::test_snf_formula',
    ],
    'DyT': [
        f'{PEFT}/test_dyt.py::test_inference_formula_and_real_skipping',
        f'{PEFT}/test_dyt.py::test_moe_adapter_counts_and_formula',
    ],
    'LST': [
        f'{PEFT}/test_lst.py::test_formula',
    ],
    'LAST': [
        f'{PEFT}/test_last.py::test_identity_then_formula',
    ],
    'HST': [
        f'{PEFT}/test_hst.py::test_formula',
        f'{PEFT}/test_hst.py::test_init',
        f'{PEFT}/test_hst.py::test_side_network_reads_the_meta_tokens',
    ],
    'Res-Tuning': [
        f'{PEFT}/test_restuning.py::test_res_tuning_identity_then_formula',
    ],
    'Res-Tuning-Bypass': [
        f'{PEFT}/test_restuning.py::test_formula',
    ],
    'E3VA': [
        f'{PEFT}/test_e3va.py::test_highway_formula_and_training',
    ],
    'SCT': [
        f'{PEFT}/test_selection_methods.py::test_sct_picks_largest_class_aware_scores',
        f'{PEFT}/test_selection_methods.py::test_sct_selection_formula_and_training',
    ],
    'GPS': [
        f'{PEFT}/test_selection_methods.py::test_gps_picks_largest_gradient_magnitudes',
        f'{PEFT}/test_selection_methods.py::test_gps_selects_and_trains_only_selected_entries',
        f'{PEFT}/test_selection_methods.py::test_gps_arguments_blocks_and_errors',
        f'{PEFT}/test_selection_methods.py::test_gps_counts_with_two_connections',
        f'{PEFT}/test_selection_methods.py::'
        'test_gps_masked_gradient_is_the_gradient_on_selected_entries',
        f'{PEFT}/test_selection_methods.py::test_gps_pooled_features_of_each_toolbox',
    ],
}
# the arguments (defaults, blocks, errors) and the existing tests of each method's other
# behaviour (merge, dropout, bad settings), run by the mutation check with its formula tests
ARGUMENTS = 'tests/test_models/test_method_arguments.py'
DEFAULTS, ERRORS = f'{ARGUMENTS}::test_defaults', f'{ARGUMENTS}::test_errors_name_the_value'
BLOCKS = f'{ARGUMENTS}::test_blocks_selects_the_blocks'
RENAMED = f'{ARGUMENTS}::test_former_argument_names_still_work'
KADAPTATION = 'tests/test_peft/test_kadaptation.py'
OTHER_TESTS = {
    'KAdaptation': [DEFAULTS, ERRORS, BLOCKS,
                    f'{KADAPTATION}::test_dropout_acts_on_the_matrix_in_training_only',
                    f'{KADAPTATION}::test_merge_is_exact_and_plain',
                    f'{KADAPTATION}::test_bad_settings',
                    f'{KADAPTATION}::test_rule_shapes_init_and_accepted_settings'],
    'PATT': [DEFAULTS, ERRORS, BLOCKS, RENAMED, 'tests/test_peft/test_patt.py::test_patt_rows',
             'tests/test_peft/test_patt.py::test_patt_bad_targets'],
    'LoRand': [DEFAULTS, ERRORS, BLOCKS,
               f'{PEFT}/test_mona_lorand.py::test_lorand_init_bounds_and_settings'],
    'Mona': [DEFAULTS, BLOCKS, f'{PEFT}/test_mona_lorand.py::test_mona_init',
             f'{PEFT}/test_mona_lorand.py::test_mona_refuses_other_grid_ranks'],
    'SNF': [DEFAULTS, ERRORS, BLOCKS, f'{PEFT}/test_mona_lorand.py::test_snf_init',
            f'{PEFT}/test_mona_lorand.py::'
            'test_snf_recompute_saves_less_and_gives_the_same_gradients'],
    'PrefixTuning': [DEFAULTS, ERRORS, BLOCKS, RENAMED,
                     f'{PEFT}/test_prefix.py::test_smallest_settings_and_kv_dtype_under_autocast'],
    'Res-Tuning-Bypass': [RENAMED],
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
