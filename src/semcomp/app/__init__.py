"""The Streamlit app: a study's results, read-only (``semcomp app STUDY``).

``main.py`` is the script Streamlit runs; it shows the pages of :data:`PAGES`
(one line per page, each a script in ``views/``), draws the filters shared by
every page in the sidebar and runs the chosen page. ``data.py`` reads the study
through cached functions that open the store read-only and close it again.
Nothing here imports streamlit at package import time.
"""

from pathlib import Path

#: the script ``streamlit run`` is given
MAIN_SCRIPT = Path(__file__).with_name("main.py")
#: environment variables through which ``semcomp app`` tells the script what to show
STUDY_ENV = "SEMCOMP_APP_STUDY"
PQVAE_RESULTS_ENV = "SEMCOMP_APP_PQVAE_RESULTS"
#: (script in views/, title, icon): one line per page, in the order of the navigation
PAGES = [
    ("overview.py", "Overview", ":material/dashboard:"),
    ("rate_distortion.py", "Rate–distortion", ":material/show_chart:"),
    ("explorer.py", "Image explorer", ":material/photo_library:"),
    ("surveys.py", "Surveys", ":material/how_to_vote:"),
    ("agreement.py", "Agreement", ":material/compare_arrows:"),
    ("embedding_codecs.py", "Embedding codecs", ":material/memory:"),
    ("zero_shot.py", "Zero-shot accuracy", ":material/category:"),
]
