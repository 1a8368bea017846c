"""Queries served by the projector process over request/reply (see :mod:`.service`)."""

from projections.queries.server import QueryServer, register_query_subscribers, serve_queries
from projections.queries.service import QUERIES, QueryService
from projections.queries.sql import SqlLimits

__all__ = ["QUERIES", "QueryServer", "QueryService", "SqlLimits",
           "register_query_subscribers", "serve_queries"]
