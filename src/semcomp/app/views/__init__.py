"""The app's pages: one Streamlit script each, run by ``main.py`` through ``st.navigation``."""
