"""Placeholder page (being built)."""
import streamlit as st

st.title("pretrain")
st.info("This page is being built.")
