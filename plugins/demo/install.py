"""``w2vrun install-engines``: the Debian main-archive engines and text sources.

As root with ``apt-get`` available it runs ``apt-get update`` and installs what
is missing; otherwise it prints what it would add and the command to do so.
It never adds package sources: the MBROLA voices (contrib/non-free) are only
described. Failing to install is reported, not fatal (exit status 0).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Callable

#: Debian main packages: engines, the resampling tool, text sources and real speech.
MAIN_PACKAGES = {
    "espeak-ng": "espeak-ng command line (drives MBROLA voices when those are installed)",
    "sox": "audio conversion",
    "flite": "flite engine: 4 natural US/Scottish voices",
    "festival": "festival engine",
    "festvox-kallpc16k": "festival voice kal_diphone",
    "festvox-kdlpc16k": "festival voice ked_diphone",
    "festvox-us-slt-hts": "festival voice cmu_us_slt_arctic_hts",
    "wordnet-base": "WordNet example sentences (labeled and unpaired text)",
    "fortunes": "fortune sentences (unpaired text)",
    "bible-kjv": "King James Bible (unlabeled audio text)",
    "pocketsphinx-testdata": "12 real human-speech clips with transcripts (the real split)",
}
NON_FREE_NOTE = (
    "Not installed, ever, by w2v: the MBROLA voices (Debian contrib/non-free: mbrola mbrola-us1 "
    "mbrola-us2 mbrola-us3 mbrola-en1), which are the most natural voices but have non-commercial "
    "terms. If you accept them, enable contrib and non-free in your apt sources yourself and "
    "install those packages; `w2vrun demo-data` then uses them (engine `mbrola`, recorded in the "
    "corpus id) and audio made with them must not be redistributed.")


def installed(package: str) -> bool:
    try:
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True,
                                text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "install ok installed" in status


def missing_packages() -> list[str]:
    return [p for p in MAIN_PACKAGES if not installed(p)]


def has_dpkg() -> bool:
    return shutil.which("dpkg-query") is not None


def can_install() -> tuple[bool, str]:
    """Whether this process can run apt-get, and why not."""
    if shutil.which("apt-get") is None or not has_dpkg():
        return False, "this system has no apt-get (not Debian/Ubuntu)"
    if os.geteuid() != 0:
        return False, "installing needs root"
    return True, ""


def install_engines(*, dry_run: bool = False, say: Callable[[str], None] = print) -> int:
    """Install the missing main-archive packages where possible; always returns 0."""
    if not has_dpkg():
        say("No dpkg/apt on this system: nothing to install. The demo corpus uses espeak-ng from "
            "the espeakng-loader wheel, plus flite/festival if you install them yourself (the "
            "corpus id records the engine set).")
        say(NON_FREE_NOTE)
        return 0
    missing = missing_packages()
    if not missing:
        say("All demo-corpus packages are installed: " + " ".join(MAIN_PACKAGES))
        say(NON_FREE_NOTE)
        return 0
    command = ["apt-get", "install", "-y", "--no-install-recommends"] + missing
    able, reason = can_install()
    say("Missing Debian packages (main archive):")
    for package in missing:
        say(f"  {package:24s} {MAIN_PACKAGES[package]}")
    if dry_run or not able:
        if not able:
            say(f"Not installing: {reason}. To add them, run as root:")
        else:
            say("Dry run; would run:")
        say("  apt-get update && " + " ".join(command))
        say(NON_FREE_NOTE)
        return 0
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for step in (["apt-get", "update"], command):
        say("$ " + " ".join(step))
        try:
            done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.SubprocessError) as error:
            say(f"  failed: {error}")
            break
        if done.returncode != 0:
            say(f"  failed with exit status {done.returncode}:")
            for line in (done.stderr or done.stdout).strip().splitlines()[-8:]:
                say("    " + line)
            break
    still = missing_packages()
    if still:
        say("Still missing: " + " ".join(still) + " (the demo corpus works without them).")
    else:
        say("Installed: " + " ".join(missing))
    say(NON_FREE_NOTE)
    return 0
