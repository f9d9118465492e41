"""The flags of ``experiments/reproduce.py``: generated from
`atalp_keras.reproduction.settings.Settings` (field name = flag name) plus one
string flag per recipe field (`RECIPE_FIELDS`, a `TrainConfig` value for
every model). The flags live here, on the command-line side, so the
reproduction's settings never import absl's flags machinery.
"""

from absl import flags

from atalp_keras.cli import common
from atalp_keras.reproduction import settings


def define_all_flags(flag_values=flags.FLAGS):
    """The `Settings` flags (from its field metadata) and one string flag per
    `RECIPE_FIELDS` name (a `TrainConfig` value for every model; unset = the
    preset's). Returns ``(settings names, recipe names)``."""
    names = common.define_flags(settings.Settings, flag_values=flag_values)
    for name in settings.RECIPE_FIELDS:
        settings.recipe_field(name)
        flags.DEFINE_string(name, None, f"TrainConfig.{name} of every model (unset: the "
                                        "preset's).", flag_values=flag_values)
    return names, list(settings.RECIPE_FIELDS)


def settings_from_flags(flag_values, names):
    """`Settings` of the parsed flags: the preset, --quick, then the flags
    given explicitly (`presets.resolve`)."""
    from atalp_keras.reproduction import presets

    explicit = {n: flag_values[n].value for n in names
                if flag_values[n].present and n not in ("preset", "quick")}
    explicit = {n: tuple(v) if isinstance(v, list) else v for n, v in explicit.items()}
    recipe = {n: settings.parse_recipe_value(n, flag_values[n].value)
              for n in settings.RECIPE_FIELDS if flag_values[n].present}
    return presets.resolve(flag_values["preset"].value, flag_values["quick"].value,
                           explicit, recipe)
