"""Fixtures of the container tests: images built once per session, one compose project per module.

Without a Docker engine (or compose, or debootstrap for the offline images) the tests skip locally, with the
reason, but FAIL when ``CI=true``: .ci/run installs and starts Docker, so its absence is a broken pipeline.
The figures (build, start and loop times, image sizes) are printed in pytest's terminal summary.
"""

from __future__ import annotations

import os

import pytest

from tests.containers.harness import (
    FIGURES,
    ComposeStack,
    ContainerStackError,
    build_hub_images,
    build_offline_images,
    docker_problem,
    image_size_bytes,
    in_ci,
)


def require_docker() -> None:
    problem = docker_problem()
    if problem is None:
        return
    message = f"container tests need Docker: {problem}"
    if in_ci():
        pytest.fail(
            f"{message} (CI=true: .ci/run installs and starts Docker, so this is a failure)", pytrace=False
        )
    pytest.skip(
        f"{message} (run `make test-containers` where Docker runs, or with CI=true to make this a failure)"
    )


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory):
    """Base, stand-in and Driftloop images (offline path by default; DRIFTLOOP_TEST_IMAGES=hub for Docker
    Hub)."""
    require_docker()
    log = tmp_path_factory.mktemp("images") / "build.log"
    build = (
        build_hub_images
        if os.environ.get("DRIFTLOOP_TEST_IMAGES", "offline") == "hub"
        else build_offline_images
    )
    try:
        built = build(log)
    except ContainerStackError as exc:
        pytest.fail(f"building the images failed: {exc}", pytrace=False)
    for label, seconds in built.seconds.items():
        FIGURES[f"build: {label}"] = f"{seconds:.0f} s"
    FIGURES["image size: Driftloop"] = f"{image_size_bytes(built.app) / 1e9:.2f} GB"
    return built


@pytest.fixture(scope="module")
def stack(images, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """The compose stack up and healthy (unique project name, fresh .env, with the test module's
    ``STACK_ENV`` over the defaults); `down -v` afterwards, whatever happens."""
    env = getattr(request.module, "STACK_ENV", None)
    compose = ComposeStack(tmp_path_factory.mktemp("compose"), images, env)
    try:
        seconds = compose.up()
    except ContainerStackError as exc:
        compose.down()
        pytest.fail(f"the compose stack did not come up: {exc}", pytrace=False)
    except BaseException:
        compose.down()
        raise
    FIGURES["stack start (up -d until every health check passes)"] = f"{seconds:.0f} s"
    try:
        yield compose
    finally:
        compose.down()


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # pytest hook signature
    if FIGURES:
        terminalreporter.section("container stack figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
