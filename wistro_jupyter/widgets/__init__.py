"""The notebook widgets: ``FlowGraph`` (the project graph, live delivery counts, node details) and
``TraceView`` (one run: spans, events, logs, state changes, errors), on anywidget.

The browser side is one ESM bundle, ``static/widgets.js``, built from ``labextension/``. Python
keeps the synced traits current from an engine ``Observer``; updates are coalesced to at most
~20 messages a second and the final state is always sent. Observers are removed when a widget
is closed, and a ``TraceView`` lets go of the engine as soon as its run has ended.

The modules, each importing only those above it (``trace_hub`` and ``remote`` name
``TraceView`` for the type checker only):

- ``base`` - the bundles (``STATIC``, ``WISTRO_WIDGETS_ESM``, ``bundle_path``, ``bundle_source``,
  ``missing_bundle_message``, ``WidgetBundleMissing``) and ``_WistroWidget``, the anywidget base;
- ``throttle`` - ``Throttle``: at most one update per ``INTERVAL_S``;
- ``trace_hub`` - ``TraceHub``, the engine observer of every live ``TraceView``;
- ``remote`` - ``RemotePoll``: a live ``TraceView`` whose run other processes run (an attached
  notebook) reads it from the shared trace store (``remote_polls``: how many do now);
- ``flow_graph`` - ``FlowGraph`` and ``render_graph``;
- ``trace_view`` - ``TraceView``;
- ``live`` - ``live_observers``: how many widget observers an engine has.
"""

from wistro_jupyter.widgets.base import _MISSING_ESM as _MISSING_ESM
from wistro_jupyter.widgets.base import BUNDLE as BUNDLE
from wistro_jupyter.widgets.base import ESM_ENV as ESM_ENV
from wistro_jupyter.widgets.base import OWN_BUNDLES as OWN_BUNDLES
from wistro_jupyter.widgets.base import STATIC as STATIC
from wistro_jupyter.widgets.base import WidgetBundleMissing as WidgetBundleMissing
from wistro_jupyter.widgets.base import _esm_cache as _esm_cache
from wistro_jupyter.widgets.base import _WistroWidget as _WistroWidget
from wistro_jupyter.widgets.base import bundle_path as bundle_path
from wistro_jupyter.widgets.base import bundle_source as bundle_source
from wistro_jupyter.widgets.base import missing_bundle_message as missing_bundle_message
from wistro_jupyter.widgets.flow_graph import MAX_LIVE_GRAPHS as MAX_LIVE_GRAPHS
from wistro_jupyter.widgets.flow_graph import FlowGraph as FlowGraph
from wistro_jupyter.widgets.flow_graph import _live_graphs as _live_graphs
from wistro_jupyter.widgets.flow_graph import render_graph as render_graph
from wistro_jupyter.widgets.live import live_observers as live_observers
from wistro_jupyter.widgets.remote import MAX_REMOTE_VIEWS as MAX_REMOTE_VIEWS
from wistro_jupyter.widgets.remote import POLL_INTERVAL_S as POLL_INTERVAL_S
from wistro_jupyter.widgets.remote import RemotePoll as RemotePoll
from wistro_jupyter.widgets.remote import remote_polls as remote_polls
from wistro_jupyter.widgets.throttle import INTERVAL_S as INTERVAL_S
from wistro_jupyter.widgets.throttle import Throttle as Throttle
from wistro_jupyter.widgets.trace_hub import MAX_LIVE_TRACE_VIEWS as MAX_LIVE_TRACE_VIEWS
from wistro_jupyter.widgets.trace_hub import TraceHub as TraceHub
from wistro_jupyter.widgets.trace_hub import _hubs as _hubs
from wistro_jupyter.widgets.trace_hub import trace_hub as trace_hub
from wistro_jupyter.widgets.trace_view import TraceView as TraceView
