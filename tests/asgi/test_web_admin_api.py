"""The routes the web UI's settings and admin pages added (issue 15) in-process: deleting one's own account,
the bias-audit runs (list, sandboxed HTML report, compare) and importing a model from a server path — each
with its bad input, its role check and its security-log line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from haven.audit.report_html import SCRIPT_CSP_HASH
from tests.asgi.test_accounts_api import Api, api, two_users
from tests.support.accounts import OTHER_PASSWORD, PASSWORD
from tests.support.audit_demo import store_demo_runs


def error(r: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = r.json()["error"]
    return body


async def log_events(admin: httpx.AsyncClient, event: str) -> list[dict[str, Any]]:
    r = await admin.get("/api/v1/admin/security-log", params={"event": event})
    assert r.status_code == 200, r.text
    entries: list[dict[str, Any]] = r.json()["data"]
    return entries


# --- delete my account ---------------------------------------------------------------------------


async def test_deleting_my_account_needs_my_password_and_removes_what_i_own(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with api(request, tmp_path, "sqlite") as a:
        alice, bob, bob_id = await two_users(a)
        conv = (await bob.post("/api/v1/conversations", json={"title": "bob's"})).json()
        secret = (await bob.post("/api/v1/me/keys", json={"label": "laptop"})).json()["secret"]

        r = await bob.request("DELETE", "/api/v1/me", json={"password": "not my password at all"})
        assert r.status_code == 401 and error(r)["code"] == "invalid_credentials" and error(r)["param"] == "password"
        r = await bob.request("DELETE", "/api/v1/me", json={})
        assert r.status_code == 400 and error(r)["param"] == "password"
        r = await bob.request("DELETE", "/api/v1/me", json={"password": OTHER_PASSWORD, "force": True})
        assert r.status_code == 400  # unknown fields are refused, not ignored
        csrf = bob.headers.pop("X-CSRF-Token")
        r = await bob.request("DELETE", "/api/v1/me", json={"password": OTHER_PASSWORD})
        assert r.status_code == 403 and error(r)["code"] == "csrf_failed"
        bob.headers["X-CSRF-Token"] = csrf
        assert (await bob.get("/api/v1/me")).status_code == 200  # nothing above deleted anything

        r = await bob.request("DELETE", "/api/v1/me", json={"password": OTHER_PASSWORD})
        assert r.status_code == 204, r.text
        assert 'haven_session=""' in r.headers["set-cookie"] or "max-age=0" in r.headers["set-cookie"].lower()
        async with a.client(Authorization=f"Bearer {secret}") as keyed:
            assert (await keyed.get("/v1/models")).status_code == 401  # the key went with the account
        names = [u["name"] for u in (await alice.get("/api/v1/admin/users")).json()["data"]]
        assert names == ["alice"]
        assert (await alice.get(f"/api/v1/conversations/{conv['id']}")).status_code == 404
        r = await login_status(a, "bob", OTHER_PASSWORD)
        assert r.status_code == 401
        deleted = await log_events(alice, "user_deleted")
        assert deleted[0]["user"] == "bob" and deleted[0]["details"] == {"name": "bob", "by": "self"}
        refused = await log_events(alice, "login_failed")
        assert any(e["details"].get("action") == "delete account" for e in refused)
        await alice.aclose()
        await bob.aclose()


async def login_status(a: Api, name: str, password: str) -> httpx.Response:
    async with a.client() as client:
        return await client.post("/api/v1/auth/login", json={"name": name, "password": password})


async def test_the_last_admin_cannot_delete_themself_and_local_mode_has_no_account(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with api(request, tmp_path, "sqlite") as a:
        r = await a.anon.request("DELETE", "/api/v1/me", json={"password": PASSWORD})
        assert r.status_code == 403 and "local single-user mode" in error(r)["message"]
        alice, bob, bob_id = await two_users(a)
        r = await alice.request("DELETE", "/api/v1/me", json={"password": PASSWORD})
        assert r.status_code == 409 and "last enabled admin" in error(r)["message"]
        assert (await alice.get("/api/v1/me")).status_code == 200
        assert (await alice.patch(f"/api/v1/admin/users/{bob_id}", json={"role": "admin"})).status_code == 200
        r = await alice.request("DELETE", "/api/v1/me", json={"password": PASSWORD})
        assert r.status_code == 204  # another admin exists now
        await alice.aclose()
        await bob.aclose()


# --- audit runs ----------------------------------------------------------------------------------


async def test_audit_runs_list_open_a_sandboxed_report_and_compare(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with api(request, tmp_path, "sqlite") as a:
        alice, bob, _ = await two_users(a)
        first, second = store_demo_runs(a.app.state.accounts.db)
        for path in ("/api/v1/admin/audit/runs", f"/api/v1/admin/audit/runs/{first}/report.html",
                     f"/api/v1/admin/audit/compare?a={first}&b={second}"):
            r = await bob.get(path)
            assert r.status_code == 403 and error(r)["code"] == "permission_denied", path

        runs = (await alice.get("/api/v1/admin/audit/runs")).json()["data"]
        assert [run["id"] for run in runs] == [second, first]
        assert runs[0]["model"] == "demo-model-1:latest" and runs[0]["responses"] == 48
        assert runs[0]["created_at"].endswith("Z") and runs[0]["finished_at"].endswith("Z")

        r = await alice.get(f"/api/v1/admin/audit/runs/{first}/report.html")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "sandbox allow-scripts" in csp and "default-src 'none'" in csp and "frame-ancestors 'self'" in csp
        assert f"script-src '{SCRIPT_CSP_HASH}'" in csp and "unsafe-eval" not in csp
        assert "<script>alert" not in r.text and "&lt;script&gt;alert" in r.text  # model output escaped

        result = (await alice.get(f"/api/v1/admin/audit/compare?a={first}&b={second}")).json()
        assert result["a"]["run"]["id"] == first and result["b"]["run"]["id"] == second
        china = next(g for g in result["groups"] if g["group"] == "CN")
        assert china["broad"]["rate_a"] > china["broad"]["rate_b"]

        for bad in ("999999", "abc", "1" * 40, "-1"):
            r = await alice.get(f"/api/v1/admin/audit/runs/{bad}/report.html")
            assert r.status_code == 404 and error(r)["code"] == "run_not_found", bad
        r = await alice.get(f"/api/v1/admin/audit/compare?a={first}")
        assert r.status_code == 400 and error(r)["param"] == "query.b"
        r = await alice.get(f"/api/v1/admin/audit/compare?a={first}&b=nope")
        assert r.status_code == 404
        assert (await alice.get("/api/v1/admin/audit/runs?limit=0")).status_code == 400
        await alice.aclose()
        await bob.aclose()


# --- model import from a server path -------------------------------------------------------------


async def test_model_import_is_off_unless_configured(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    async with api(request, tmp_path, "sqlite") as a:
        alice, bob, _ = await two_users(a)
        r = await alice.post("/api/v1/admin/models/import", json={"path": "/tmp/x.gguf"})
        assert r.status_code == 403 and error(r)["code"] == "model_import_disabled"
        assert "HAVEN_MODEL_IMPORT_DIRS" in error(r)["message"]
        await alice.aclose()
        await bob.aclose()


async def test_model_import_from_an_allowed_directory_refuses_escapes(
    request: pytest.FixtureRequest, tmp_path: Path, make_test_model: Any
) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    model = make_test_model()
    (allowed / "good.gguf").write_bytes(model.read_bytes())
    (outside / "secret.gguf").write_bytes(model.read_bytes())
    os.symlink(outside / "secret.gguf", allowed / "escape.gguf")
    os.symlink(allowed / "good.gguf", allowed / "inside-link.gguf")
    (allowed / "junk.gguf").write_bytes(b"not a gguf file at all")
    (allowed / "sub").mkdir()
    async with api(request, tmp_path, "sqlite", model_import_dirs=[str(allowed)]) as a:
        alice, bob, _ = await two_users(a)
        url = "/api/v1/admin/models/import"
        r = await bob.post(url, json={"path": str(allowed / "good.gguf")})
        assert r.status_code == 403 and error(r)["code"] == "permission_denied"

        refused = {
            "good.gguf": "absolute",
            f"{allowed}/sub/../good.gguf": "'..'",
            str(outside / "secret.gguf"): "not inside an import directory",
            str(allowed / "escape.gguf"): "not inside an import directory",
            "/etc/passwd": "not inside an import directory",
            str(allowed / "missing.gguf"): "no such file",
            str(allowed / "sub"): "not a regular file",
        }
        for path, message in refused.items():
            r = await alice.post(url, json={"path": path})
            assert r.status_code == 400 and error(r)["param"] == "path", (path, r.text)
            assert message in error(r)["message"], (path, error(r)["message"])
        r = await alice.post(url, json={"path": str(allowed / "junk.gguf")})
        assert r.status_code == 400 and "\n" not in error(r)["message"], r.text
        assert (await alice.post(url, json={})).status_code == 400
        r = await alice.post(url, json={"path": str(allowed / "good.gguf"), "name": "Bad Name!!"})
        assert r.status_code == 400 and error(r)["code"] == "invalid_model_name"
        tags = [m["name"] for m in (await alice.get("/api/tags")).json()["models"]]
        assert tags == ["tiny:latest"]  # nothing refused above reached the store

        r = await alice.post(url, json={"path": str(allowed / "inside-link.gguf"), "name": "imported:v1"})
        assert r.status_code == 201, r.text
        assert r.json()["model"] == "imported:v1" and r.json()["template_safe"] is True
        tags = [m["name"] for m in (await alice.get("/api/tags")).json()["models"]]
        assert "imported:v1" in tags
        logged = await log_events(alice, "model_imported")
        assert logged[0]["details"] == {"model": "imported:v1", "source": str((allowed / "good.gguf").resolve())}
        await alice.aclose()
        await bob.aclose()
