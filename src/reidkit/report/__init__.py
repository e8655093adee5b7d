"""Run reports: CMC and training-curve plots, ranked-list images, and an HTML page tying them together."""
from reidkit.report.html import html_table, write_html_report
from reidkit.report.plots import plot_cmc, plot_training_curves, read_log
from reidkit.report.ranked_lists import protocol_ranking, ranked_list_image, save_ranked_lists

__all__ = ["plot_cmc", "plot_training_curves", "read_log", "protocol_ranking", "ranked_list_image",
           "save_ranked_lists", "html_table", "write_html_report"]
