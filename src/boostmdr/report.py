"""Pages of the HTML report (``snakemake --report``) that are not results tables: the configuration a run used.

The report embeds the config files Snakemake was given; this page shows the configuration the rules actually
saw, after the overlays were merged and the entries an overlay set to null were removed, as YAML.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)


def config_page(config: Mapping[str, Any], removed: Sequence[str] = ()) -> str:
    """A self-contained HTML page of ``config`` (YAML, key order kept) and the keys an overlay removed."""
    import yaml

    from boostmdr.tables import html_page

    text = yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True, width=110)
    body = ["<h1>Configuration of this run</h1>",
            "<p>The configuration every rule saw: config/config.yaml with the overlays given by --configfile merged "
            "over it, each key documented in config/schema.yaml.</p>"]
    if removed:
        body.append("<p>Removed by an overlay (set to null): " + ", ".join(f"<code>{html.escape(k)}</code>" for k in removed)
                    + "</p>")
    body.append(f'<pre style="font-size:0.85em;line-height:1.35">{html.escape(text)}</pre>')
    return html_page("Configuration", body)


def write_config_page(smk: Any) -> None:
    """``scripts/config_page.py``: params ``page`` ({config, removed}); output the HTML page."""
    from boostmdr.formats import atomic_write
    from boostmdr.utils import setup_logging

    setup_logging(smk.log[0] if smk.log else None)
    with atomic_write(smk.output[0]) as fh:
        fh.write(config_page(smk.params.page["config"], smk.params.page["removed"]))
    log.info("wrote %s", smk.output[0])
