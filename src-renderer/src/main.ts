// Renderer entry. The React + zustand UI arrives with the desktop-app issue; until then this shows the name.
const root = document.getElementById('root');
if (root) root.textContent = 'Weft';
