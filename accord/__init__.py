"""accord: do LLM raters agree with people, and with which people?

The code lives in the top-level folders of the repository (models/, scheduler/, worker/,
analysis/, api/), installed as the subpackages accord.models, accord.scheduler, ...
"""

__version__ = "0.1.0"
