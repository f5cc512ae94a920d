"""Placeholder page (being built)."""
import streamlit as st

st.title("false_negatives")
st.info("This page is being built.")
