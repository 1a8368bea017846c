"""``threadlog serve``'s parts together: handlers, projector (queries on the broker) and
the invoice scheduler reading the projector's views."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from events import Aggregate, Usage, UsageRecorded, new_id
from tests.conftest import RuntimeFactory
from threadlog.parts import serve_parts


async def test_usage_flows_from_the_log_through_the_view_to_an_invoice(
        runtime_factory: RuntimeFactory) -> None:
    user = "inv" + new_id()[:8]
    async with runtime_factory(extra_parts=serve_parts()) as rt:
        assert {"projector", "scheduler"} <= set(rt.parts)
        for cost in (0.5, 0.25):
            last = await rt.store.append(Aggregate("usage", user), [UsageRecorded(
                call_id=new_id(), user_id=user, model="gpt-4o-mini",
                usage=Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15),
                cost=cost, at=datetime(2025, 1, 15, tzinfo=UTC))])
        summary = await rt.client(user).query("query.usage.summary", min_seq=last.last_seq)
        assert summary.seq is not None and summary.seq >= last.last_seq
        reply = json.loads((await rt.nc.request("ops.invoices.run",
                                                b'{"period": "2025-01"}', timeout=30)).data)
        assert reply["ok"], reply
        issued = await rt.store.read(Aggregate("invoice", f"{user}_2025-01"))
        assert [e.type for e in issued] == ["invoice_issued"]
        assert abs(issued[0].event.amount - 0.75) < 1e-9  # type: ignore[attr-defined]
        rows = await rt.client(user).query(
            "ops.sql", sql=f"SELECT status, amount FROM invoices WHERE user_id = '{user}'",
            min_seq=issued[0].seq)
        assert rows.value["rows"] == [["pending", 0.75]]
