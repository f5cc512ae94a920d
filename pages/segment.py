"""Placeholder page (being built)."""
import streamlit as st

st.title("segment")
st.info("This page is being built.")
