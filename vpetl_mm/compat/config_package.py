"""``_base_ = ['vpetl_mm::vtab/...']``: configs inheriting vpetl_mm's own.

mmengine resolves ``package::path`` config paths only for the packages of its fixed table
(``mmengine.config.utils.MODULE2PACKAGE``: the OpenMMLab toolboxes). vpetl_mm ships its configs
as they do (``vpetl_mm/.mim/configs``) and adds itself to that table, so such a config loads
once vpetl_mm is imported (the project's tools import it before reading the config).

mmengine then gives every typed dict of the inherited file ``_scope_='vpetl_mm'``, the scope of
a toolbox that owns its types. vpetl_mm's configs are toolbox configs (mmpretrain, mmaction,
mmseg, mmdet: their ``default_scope``) whose own types say ``vpetl_mm.`` explicitly, so
:func:`drop_package_scope` removes those ``_scope_`` keys again (the project's tools call it).
"""


def register_config_package() -> None:
    """Let mmengine read ``vpetl_mm::<path>`` as ``<vpetl_mm>/.mim/configs/<path>``."""
    from mmengine.config import utils
    utils.MODULE2PACKAGE.setdefault('vpetl_mm', 'vpetl_mm')


def drop_package_scope(cfg) -> int:
    """Remove ``_scope_='vpetl_mm'`` from every dict of ``cfg`` (a Config, dict or list), so its
    types resolve in the run's ``default_scope``; returns how many were removed."""
    cfg = getattr(cfg, '_cfg_dict', cfg)
    removed = 0
    if isinstance(cfg, dict):
        if cfg.get('_scope_') == 'vpetl_mm':
            dict.pop(cfg, '_scope_')
            removed += 1
        for value in cfg.values():
            removed += drop_package_scope(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            removed += drop_package_scope(value)
    return removed
