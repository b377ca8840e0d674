"""``_base_ = ['vpetl_mm::vtab/...']``: configs inheriting vpetl_mm's own.

mmengine resolves ``package::path`` config paths only for the packages of its fixed table
(``mmengine.config.utils.MODULE2PACKAGE``: the OpenMMLab toolboxes). vpetl_mm ships its configs
as they do (``vpetl_mm/.mim/configs``) and adds itself to that table, so such a config loads
once vpetl_mm is imported (the project's tools import it before reading the config).

mmengine then gives every typed dict of the inherited file ``_scope_='vpetl_mm'``, the scope of
a toolbox that owns its types. vpetl_mm's configs are toolbox configs (mmpretrain, mmaction,
mmseg, mmdet: their ``default_scope``) whose own types say ``vpetl_mm.`` explicitly, so
:func:`read_config` (what the project's tools read configs with) removes those ``_scope_`` keys
again.
"""


def register_config_package() -> None:
    """Let mmengine read ``vpetl_mm::<path>`` as ``<vpetl_mm>/.mim/configs/<path>``."""
    from mmengine.config import utils
    utils.MODULE2PACKAGE.setdefault('vpetl_mm', 'vpetl_mm')


def read_config(path: str):
    """``Config.fromfile(path)`` with the types of bases inherited as ``vpetl_mm::...`` resolving
    in the run's ``default_scope``."""
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    drop_package_scope(cfg._cfg_dict)
    return cfg


def drop_package_scope(cfg) -> None:
    """Remove ``_scope_='vpetl_mm'`` from every dict of ``cfg`` (nested dicts and lists)."""
    if isinstance(cfg, dict):
        if cfg.get('_scope_') == 'vpetl_mm':
            dict.pop(cfg, '_scope_')
        for value in cfg.values():
            drop_package_scope(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            drop_package_scope(value)
