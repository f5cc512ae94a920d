"""Placeholder page (being built)."""
import streamlit as st

st.title("finetune")
st.info("This page is being built.")
