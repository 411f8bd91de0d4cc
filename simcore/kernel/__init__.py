"""The modelled kernel; files mirror the kernel's (mm/vmalloc.c -> vmalloc.py)."""
