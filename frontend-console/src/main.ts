import "./style.css";
import "./app";
