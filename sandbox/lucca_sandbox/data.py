"""Deterministic generator of Lucca ``v2.RealizedTraining`` records.

The sandbox must exercise the same corner cases as a real tenant (accents and very long
titles, CSV imports without demand/session, non-attended sessions, two-decimal durations,
end dates that are unrelated to the id order), and it must do so reproducibly: a test or a
benchmark that fails has to be replayable from its seed alone. Everything here is therefore
driven by one ``random.Random(seed)`` and plain Python data, with no dependency.
"""

from __future__ import annotations

import bisect
import gc
import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

__all__ = ["TRAINING_CATALOGUE", "CatalogueTraining", "generate_records"]


@dataclass(frozen=True)
class CatalogueTraining:
    """One entry of the fake training catalogue.

    ``days`` is the usual session length and ``hours_per_day`` the usual daily load; the
    generator perturbs both so that durations look like the hand-typed values of a real
    tenant rather than a neat multiple of seven.
    """

    id: int
    title: str
    category_id: int
    provider_url: str
    level: str
    days: int
    hours_per_day: float
    popularity: float


# Ids are sparse on purpose: real catalogues lose trainings over the years.
TRAINING_CATALOGUE: tuple[CatalogueTraining, ...] = (
    CatalogueTraining(
        45,
        "Mastering French: From Basics to Fluency",
        1,
        "https://elan-francais.fr",
        "Beginner",
        2,
        7,
        3.0,
    ),
    CatalogueTraining(
        3,
        "Sécurité incendie : manipulation des extincteurs",
        2,
        "https://prevention-feu.fr",
        "Beginner",
        1,
        3.5,
        6.0,
    ),
    CatalogueTraining(
        7,
        "Sauveteur Secouriste du Travail (SST) \u2013 formation initiale",
        2,
        "https://secours-entreprise.fr",
        "Beginner",
        2,
        7,
        5.0,
    ),
    CatalogueTraining(
        8,
        (
            "Sauveteur Secouriste du Travail \u2013 maintien et actualisation "
            "des compétences (MAC SST)"
        ),
        2,
        "https://secours-entreprise.fr",
        "Middle",
        1,
        7,
        4.0,
    ),
    CatalogueTraining(
        11,
        "Habilitation électrique B0/H0V \u2013 personnel non électricien",
        2,
        "https://habilitations-pro.fr",
        "Beginner",
        1,
        7,
        2.5,
    ),
    CatalogueTraining(
        12,
        "Gestes et postures au poste de travail",
        2,
        "https://ergonomie-travail.fr",
        "Beginner",
        1,
        3.5,
        4.0,
    ),
    CatalogueTraining(
        15,
        "Manager une équipe à distance : rituels, confiance et délégation",
        3,
        "https://ecole-des-managers.fr",
        "Middle",
        2,
        7,
        3.0,
    ),
    CatalogueTraining(
        16,
        "Prise de poste du manager de proximité",
        3,
        "https://ecole-des-managers.fr",
        "Beginner",
        3,
        7,
        2.5,
    ),
    CatalogueTraining(
        17,
        "Conduire l'entretien annuel et l'entretien professionnel : cadre légal, posture et outils",
        3,
        "https://ecole-des-managers.fr",
        "Middle",
        1,
        7,
        3.5,
    ),
    CatalogueTraining(
        19,
        "Gérer les situations conflictuelles",
        3,
        "https://relations-humaines.fr",
        "Middle",
        2,
        7,
        2.0,
    ),
    CatalogueTraining(
        21,
        "Leadership et intelligence émotionnelle",
        3,
        "https://relations-humaines.fr",
        "Expert",
        2,
        7,
        1.5,
    ),
    CatalogueTraining(
        24,
        "Excel : tableaux croisés dynamiques et fonctions avancées",
        4,
        "https://bureautique-plus.fr",
        "Middle",
        1,
        7,
        4.5,
    ),
    CatalogueTraining(
        25, "Excel \u2013 les fondamentaux", 4, "https://bureautique-plus.fr", "Beginner", 1, 7, 4.0
    ),
    CatalogueTraining(
        26,
        "PowerPoint : concevoir des présentations percutantes",
        4,
        "https://bureautique-plus.fr",
        "Beginner",
        1,
        3.5,
        2.0,
    ),
    CatalogueTraining(
        28,
        "Python pour l'analyse de données : pandas, visualisation et automatisation de rapports",
        4,
        "https://data-academie.fr",
        "Middle",
        3,
        7,
        1.5,
    ),
    CatalogueTraining(
        29,
        "SQL : interroger une base de données relationnelle",
        4,
        "https://data-academie.fr",
        "Beginner",
        2,
        7,
        2.0,
    ),
    CatalogueTraining(
        31,
        "Cybersécurité : les bons réflexes face à l'hameçonnage",
        4,
        "https://cyber-vigilance.fr",
        "Beginner",
        1,
        0.75,
        6.5,
    ),
    CatalogueTraining(
        33,
        (
            "Règlement général sur la protection des données (RGPD) : obligations, "
            "registre des traitements et droits des personnes"
        ),
        5,
        "https://conformite-rgpd.fr",
        "Middle",
        1,
        7,
        2.5,
    ),
    CatalogueTraining(
        34,
        "Prévention du harcèlement moral et sexuel au travail",
        5,
        "https://egalite-pro.fr",
        "Beginner",
        1,
        3.5,
        4.5,
    ),
    CatalogueTraining(
        35,
        (
            "Référent·e harcèlement sexuel et agissements sexistes : missions, "
            "enquête interne et accompagnement des victimes"
        ),
        5,
        "https://egalite-pro.fr",
        "Expert",
        2,
        7,
        1.0,
    ),
    CatalogueTraining(
        36,
        "Droit du travail : l'essentiel pour les RH",
        5,
        "https://juris-formation.fr",
        "Middle",
        2,
        7,
        1.5,
    ),
    CatalogueTraining(
        38,
        "Paie : maîtriser les cotisations sociales et la DSN",
        5,
        "https://juris-formation.fr",
        "Expert",
        3,
        7,
        1.0,
    ),
    CatalogueTraining(
        41,
        "Anglais professionnel \u2013 niveau B1 (parcours certifiant TOEIC)",
        1,
        "https://langues-entreprise.fr",
        "Middle",
        5,
        2.35,
        2.5,
    ),
    CatalogueTraining(
        42, "Espagnol débutant", 1, "https://langues-entreprise.fr", "Beginner", 5, 1.5, 1.5
    ),
    CatalogueTraining(
        44,
        "Allemand des affaires : négocier et présenter",
        1,
        "https://langues-entreprise.fr",
        "Expert",
        4,
        3,
        0.8,
    ),
    CatalogueTraining(
        47,
        "Prise de parole en public : gagner en aisance et en impact",
        6,
        "https://eloquence-atelier.fr",
        "Beginner",
        2,
        7,
        2.5,
    ),
    CatalogueTraining(
        48,
        "Gestion du temps et des priorités",
        6,
        "https://efficacite-pro.fr",
        "Beginner",
        1,
        7,
        3.0,
    ),
    CatalogueTraining(
        50,
        "Prévenir l'épuisement professionnel : repérer les signaux faibles et agir",
        6,
        "https://qualite-vie-travail.fr",
        "Middle",
        1,
        7,
        2.0,
    ),
    CatalogueTraining(
        52, "Communication non violente", 6, "https://relations-humaines.fr", "Beginner", 2, 7, 2.0
    ),
    CatalogueTraining(
        55,
        "Négociation commerciale : techniques avancées",
        7,
        "https://force-de-vente.fr",
        "Expert",
        2,
        7,
        1.5,
    ),
    CatalogueTraining(
        56,
        "Relation client : gérer les réclamations au téléphone",
        7,
        "https://force-de-vente.fr",
        "Beginner",
        1,
        3.5,
        2.5,
    ),
    CatalogueTraining(
        58,
        "Prospection B2B sur les réseaux sociaux",
        7,
        "https://force-de-vente.fr",
        "Middle",
        1,
        7,
        1.5,
    ),
    CatalogueTraining(
        61,
        (
            "Conduite de chariots élévateurs \u2013 CACES® R489 catégories 1A, 1B, 3 et 5 "
            "(formation initiale et test)"
        ),
        8,
        "https://caces-formation.fr",
        "Middle",
        5,
        7,
        1.2,
    ),
    CatalogueTraining(
        62,
        "Travail en hauteur et port du harnais",
        8,
        "https://securite-chantier.fr",
        "Middle",
        1,
        7,
        1.0,
    ),
    CatalogueTraining(
        64,
        "Hygiène alimentaire HACCP en restauration commerciale",
        8,
        "https://hygiene-alimentaire.fr",
        "Beginner",
        2,
        7,
        1.0,
    ),
    CatalogueTraining(
        67,
        "Gestion de projet agile (Scrum, Kanban)",
        4,
        "https://agilite-conseil.fr",
        "Middle",
        2,
        7,
        2.0,
    ),
    CatalogueTraining(
        68,
        "Certification PMP® : préparation à l'examen",
        4,
        "https://agilite-conseil.fr",
        "Expert",
        5,
        7,
        0.6,
    ),
    CatalogueTraining(
        71,
        "Comptabilité générale pour non-comptables",
        5,
        "https://finance-formation.fr",
        "Beginner",
        2,
        7,
        1.2,
    ),
    CatalogueTraining(
        73,
        (
            "Accueil et intégration des nouveaux collaborateurs : "
            "construire un parcours d'onboarding réussi"
        ),
        3,
        "https://ecole-des-managers.fr",
        "Middle",
        1,
        3.5,
        1.8,
    ),
    CatalogueTraining(
        77,
        "Éco-conduite et sécurité routière",
        8,
        "https://route-et-securite.fr",
        "Beginner",
        1,
        3.5,
        1.0,
    ),
    CatalogueTraining(
        79,
        "Intelligence artificielle générative : usages, limites et éthique",
        4,
        "https://data-academie.fr",
        "Beginner",
        1,
        2.5,
        3.5,
    ),
)

_EMPLOYEE_POOL_SIZE = 320
_EMPLOYEE_ID_SPACE = 2400
_CSV_IMPORT_RATE = 0.15
_NOT_ATTENDED_RATE = 0.10


def _duration(rng: random.Random, training: CatalogueTraining, days: int) -> int | float:
    """Return a duration in hours with at most two decimals, as a JSON-friendly number.

    Durations are built in integer cents so that ``2.35`` really serialises as ``2.35``
    (``235 / 100`` is the closest double and its ``repr`` is the shortest round trip); whole
    hours are emitted as ints, as Lucca does in its own example (``14``).
    """
    roll = rng.random()
    if roll < 0.70:
        cents = round(days * training.hours_per_day * 100)
    elif roll < 0.90:
        # A session cut short or extended by a fraction of an hour.
        cents = round(days * training.hours_per_day * 100) + (int(rng.random() * 9) - 4) * 25
    else:
        # A hand-typed value from a CSV import or an e-learning module.
        cents = 50 + int(rng.random() * days * 800)
    cents = max(cents, 25)
    return cents // 100 if cents % 100 == 0 else cents / 100


def generate_records(seed: int, count: int, start: date, end: date) -> list[dict[str, Any]]:
    """Generate ``count`` realized trainings whose ``sessionEndsOn`` lies in ``[start, end]``.

    The result is sorted by ``id`` (the order the sandbox serves), while end dates are drawn
    independently of ids so that consumers cannot get away with assuming date order. The
    ``training`` dicts are shared between records of the same training to keep 500,000
    records affordable in memory: treat the records as read-only.

    Args:
        seed: PRNG seed; the same seed (and arguments) always yields identical records.
        count: number of records (>= 0).
        start: first possible ``sessionEndsOn`` (inclusive).
        end: last possible ``sessionEndsOn`` (inclusive).
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    if start > end:
        raise ValueError("start must be on or before end")
    # Half a million fresh dicts would trigger many useless cyclic-GC passes (the records
    # hold no cycles); pausing the collector saves about a fifth of the time.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _generate(seed, count, start, end)
    finally:
        if gc_was_enabled:
            gc.enable()


def _generate(seed: int, count: int, start: date, end: date) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rand = rng.random

    n_days = (end - start).days + 1
    # Sessions may start up to 4 days before ``start``: precompute every date string once.
    iso_days = [(start + timedelta(days=i - 4)).isoformat() for i in range(n_days + 4)]

    catalogue = TRAINING_CATALOGUE
    n_trainings = len(catalogue)
    training_dicts = [
        {
            "id": t.id,
            "title": t.title,
            "categoryId": t.category_id,
            "providerUrl": t.provider_url,
            "level": t.level,
        }
        for t in catalogue
    ]
    cumulative: list[float] = []
    total_weight = 0.0
    for t in catalogue:
        total_weight += t.popularity
        cumulative.append(total_weight)

    employees = sorted(rng.sample(range(1, _EMPLOYEE_ID_SPACE + 1), _EMPLOYEE_POOL_SIZE))
    n_employees = len(employees)

    # Lucca forbids two realized trainings with the same (employee, training, end date);
    # honour it when possible, and give up after a few draws on absurdly dense requests.
    seen_keys: set[int] = set()
    sessions: dict[int, int] = {}
    next_session_id = 100 + int(rand() * 50)
    next_demand_id = 4000 + int(rand() * 500)
    record_id = 1 + int(rand() * 200)

    records: list[dict[str, Any]] = []
    append = records.append
    for _ in range(count):
        t_index = bisect.bisect_right(cumulative, rand() * total_weight)
        if t_index >= n_trainings:
            t_index = n_trainings - 1
        training = catalogue[t_index]
        end_day = int(rand() * n_days)
        owner_index = int(rand() * n_employees)
        for _attempt in range(6):
            key = (owner_index * n_trainings + t_index) * n_days + end_day
            if key not in seen_keys:
                break
            owner_index = int(rand() * n_employees)
        seen_keys.add(key)

        days = training.days
        jitter = rand()
        if jitter < 0.15 and days > 1:
            days -= 1
        elif jitter > 0.90 and days < 5:
            days += 1
        start_day = end_day - days + 1

        record: dict[str, Any] = {
            "id": record_id,
            "ownerId": employees[owner_index],
            "training": training_dicts[t_index],
        }
        kind = rand()
        if kind < _CSV_IMPORT_RATE:
            # CSV imports carry no demand nor session; Lucca emits either nothing or null.
            if kind < _CSV_IMPORT_RATE / 2:
                record["trainingDemandId"] = None
                record["sessionId"] = None
        else:
            next_demand_id += 1 + int(rand() * 7)
            session_key = (t_index * (n_days + 4) + start_day + 4) * 8 + days
            session_id = sessions.get(session_key)
            if session_id is None:
                next_session_id += 1 + int(rand() * 3)
                session_id = sessions[session_key] = next_session_id
            record["trainingDemandId"] = next_demand_id
            record["sessionId"] = session_id
        record["sessionStartsOn"] = iso_days[start_day + 4]
        record["sessionEndsOn"] = iso_days[end_day + 4]
        record["hasAttended"] = rand() >= _NOT_ATTENDED_RATE
        record["durationInHours"] = _duration(rng, training, days)
        append(record)

        # Ids increase with gaps: deleted records and other tenants' rows leave holes.
        gap = rand()
        record_id += 1 if gap < 0.80 else 2 + int(gap * 40) % 17
    return records
