"""The HTTP calls claude-mem 9.0.0's hooks make, as one small client.

Shared by every target that speaks claude-mem's API (our reference worker and the real worker), so
that both are driven identically. Bodies follow ../docs and the reference table of the 9.0.0 API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp


class HookError(RuntimeError):
    """A hook request got a non-2xx answer or an answer of the wrong shape."""


@dataclass
class HookClient:
    http: aiohttp.ClientSession
    base_url: str

    async def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        async with self.http.post(self.base_url + path, json=body or {}) as resp:
            text = await resp.text()
            if resp.status // 100 != 2:
                raise HookError(f"POST {path} -> {resp.status}: {text[:300]}")
        try:
            data = json.loads(text) if text else {}
        except ValueError as exc:
            raise HookError(f"POST {path}: answer is not JSON: {text[:300]}") from exc
        return data if isinstance(data, dict) else {"value": data}

    async def get(self, path: str) -> Any:
        async with self.http.get(self.base_url + path) as resp:
            if resp.status // 100 != 2:
                raise HookError(f"GET {path} -> {resp.status}: {(await resp.text())[:300]}")
            return await resp.json()

    async def delete_session(self, session_db_id: int) -> None:
        """Abandon a session: the worker drops its queue and ends its observer."""
        async with self.http.delete(f"{self.base_url}/sessions/{session_db_id}") as resp:
            text = await resp.text()
            if resp.status // 100 != 2:
                raise HookError(f"DELETE /sessions/{session_db_id} -> {resp.status}: {text[:300]}")

    # UserPromptSubmit, part 1: create or find the session, count the prompt.
    async def session_init(self, content_session_id: str, project: str, prompt: str) -> dict:
        data = await self._post(
            "/api/sessions/init",
            {"contentSessionId": content_session_id, "project": project, "prompt": prompt},
        )
        if "sessionDbId" not in data:
            raise HookError(f"/api/sessions/init answered without sessionDbId: {data}")
        return data

    # UserPromptSubmit, part 2: in 9.0.0 this starts a generator and spawns `claude`.
    async def start_generator(self, session_db_id: int, prompt: str, prompt_number: int) -> dict:
        return await self._post(
            f"/sessions/{session_db_id}/init",
            {"userPrompt": prompt, "promptNumber": prompt_number},
        )

    # PostToolUse
    async def observation(
        self, content_session_id: str, tool_name: str, tool_input: Any, tool_response: Any, cwd: str
    ) -> dict:
        return await self._post(
            "/api/sessions/observations",
            {
                "contentSessionId": content_session_id,
                "tool_name": tool_name,
                "tool_input": tool_input,
                "tool_response": tool_response,
                "cwd": cwd,
            },
        )

    # Stop
    async def summarize(self, content_session_id: str, last_assistant_message: str) -> dict:
        return await self._post(
            "/api/sessions/summarize",
            {
                "contentSessionId": content_session_id,
                "last_assistant_message": last_assistant_message,
            },
        )

    # SessionEnd (removed from claude-mem in 8.1.0; restored in 9.1.0)
    async def complete(self, session_db_id: int) -> dict:
        return await self._post(f"/sessions/{session_db_id}/complete")
