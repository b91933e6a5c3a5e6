"""The wtm dashboard: a Textual terminal UI over the metadata store, and ``wtm runs watch``.

Modules, one idea each:

- :mod:`tui.format`: how statuses, times, sizes and values look (rich only);
- :mod:`tui.flow`: stages, data-flow edges and bounded lineage trees of a run;
- :mod:`tui.poller`: incremental reads of the store (what changed since the last poll);
- :mod:`tui.storeio`: the one thread that talks to the store, with lazy (re)opening;
- :mod:`tui.actions`: cancel and re-run;
- :mod:`tui.widgets`: a table updated in place, the error banner;
- :mod:`tui.screens`: one module per screen;
- :mod:`tui.app`: the app, its modes and its poll loop;
- :mod:`tui.watch`: ``wtm runs watch``, a rich ``Live`` view for scripts and CI logs.

Nothing here is imported by :mod:`runtime` at module level, so the engine does
not depend on Textual.
"""
