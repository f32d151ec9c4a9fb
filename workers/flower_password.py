"""Whether a password is too weak to guard Flower, and by which rule.

Flower's basic auth is all that stands between the network and every task's arguments, so
`python -m workers.flower` refuses a password that a guess or a short search finds. The answer
names the rule it breaks, never the password (it goes to a terminal and to logs).
"""
from __future__ import annotations

import math
import string

MIN_LENGTH = 12
MIN_DISTINCT = 8
MIN_BITS = 60

# Passwords every guessing run tries first, and words people build passwords from (compared after
# lowercasing and dropping digits and punctuation at both ends: "Password123!" is "password").
COMMON = frozenset({
    "password", "passw0rd", "passwort", "motdepasse", "contrasena", "secret", "changeme", "change-me", "changeit",
    "default", "admin", "administrator", "root", "toor", "guest", "user", "test", "tester", "testing", "demo",
    "welcome", "letmein", "login", "master", "monkey", "dragon", "sunshine", "princess", "football", "baseball",
    "iloveyou", "trustno1", "whatever", "superman", "batman", "starwars", "shadow", "freedom", "flower", "flowers",
    "celery", "geoqueue", "redis", "qwerty", "qwertz", "azerty", "asdf", "zxcvbnm", "abc", "abcd", "hello",
    "helloworld", "access", "private", "operator", "supervisor", "manager", "internet", "computer", "company",
    "summer", "winter", "spring", "autumn", "january", "december", "monday", "friday",
})
# Runs a finger or the alphabet follows; a password inside one of them (either way) is a sequence.
SEQUENCES = ("abcdefghijklmnopqrstuvwxyz", "0123456789012345678901234567890", "qwertyuiopasdfghjklzxcvbnm",
             "qwertzuiopasdfghjklyxcvbnm", "azertyuiopqsdfghjklmwxcvbn", "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p")
CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits)
OTHER_SIZE = 33   # printable ASCII punctuation and space; any other character counts here too


def estimated_bits(password: str) -> float:
    """Length times log2 of the alphabet the password draws from (the character classes it uses):
    an upper bound of its strength for a random password, which the other rules keep honest."""
    pool = sum(len(chars) for chars in CLASSES if any(c in chars for c in password))
    pool += OTHER_SIZE if any(not any(c in chars for chars in CLASSES) for c in password) else 0
    return len(password) * math.log2(pool) if pool else 0.0


def _core(password: str) -> str:
    return password.lower().strip(string.digits + string.punctuation + " ")


def _is_sequence(password: str) -> bool:
    lowered = password.lower()
    return any(lowered in run or lowered in run[::-1] for run in SEQUENCES)


def weakness(user: str, password: str) -> str | None:
    """The rule `password` breaks, or None when it may guard Flower."""
    if len(password) < MIN_LENGTH:
        return f"it is shorter than {MIN_LENGTH} characters"
    if len(set(password)) < MIN_DISTINCT:
        return f"it has fewer than {MIN_DISTINCT} different characters"
    if _core(password) in COMMON or password.lower() in COMMON:
        return "it is a common password"
    if len(user) >= 3 and user.lower() in password.lower():
        return "it contains the user name"
    if _is_sequence(password):
        return "it is a keyboard or alphabet sequence"
    if estimated_bits(password) < MIN_BITS:
        return (f"its estimated strength is below {MIN_BITS} bits (use more characters, or more kinds: lower and "
                "upper case, digits, punctuation)")
    return None
